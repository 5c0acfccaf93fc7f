// imcloud console: dialogs, live cost previews, the secret key on request.
// No build step and no framework; the server renders everything, this only wires it up.
"use strict";

(function () {
  const timers = new WeakMap();
  const counters = new WeakMap();

  const IDLE = '<div class="preview-box idle" data-state="idle">Adjust the change to see what it costs.</div>';

  function openDialog(dialog) {
    if (!dialog.open) dialog.showModal();
    const first = dialog.querySelector("[autofocus]");
    (first || dialog).focus(); // not the first button: no focus ring on "×"
    const form = dialog.querySelector("form.plan-form");
    if (!form) return;
    sync(form);
    const error = form.querySelector(".dialog-error:not([hidden])");
    const box = form.querySelector(".preview");
    if (error && box) {
      box.innerHTML = IDLE; // the refusal just shown says it already
    } else {
      refresh(form);
    }
  }

  function valueOf(el) {
    return el.type === "checkbox" ? (el.checked ? "on" : "off") : el.value;
  }

  // Show the chosen edition's items (disabled fieldsets are not submitted), mark the
  // values moved from where the dialog started, gate the Disable button on the name.
  function sync(form) {
    const chosen = form.querySelector('input[name="edition"]:checked');
    form.querySelectorAll("fieldset[data-edition]").forEach((fs) => {
      const on = chosen !== null && fs.dataset.edition === chosen.value;
      fs.hidden = !on;
      fs.disabled = !on;
    });
    form.querySelectorAll("[data-start]").forEach((el) => {
      const row = el.closest(".item-row");
      if (row) row.classList.toggle("changed", valueOf(el) !== el.dataset.start);
    });
    const match = form.querySelector("[data-match]");
    if (match) {
      form.querySelector("[data-confirm]").disabled = match.value !== match.dataset.match;
    }
  }

  async function refresh(form) {
    const box = form.querySelector(".preview");
    if (!box || !form.dataset.preview) return;
    const n = (counters.get(form) || 0) + 1;
    counters.set(form, n);
    box.classList.add("loading");
    try {
      const response = await fetch(form.dataset.preview, {
        method: "POST",
        body: new URLSearchParams(new FormData(form)),
        credentials: "same-origin",
      });
      const html = await response.text();
      if (counters.get(form) !== n) return; // a newer preview is on its way
      box.innerHTML = html; // rendered and escaped by the server
      const state = box.firstElementChild ? box.firstElementChild.dataset.state : "";
      if (!form.querySelector("[data-match]")) {
        form.querySelector("[data-confirm]").disabled = state === "idle";
      }
    } catch (err) {
      if (counters.get(form) === n) {
        box.innerHTML = '<div class="preview-box refused" data-state="error"></div>';
        box.firstElementChild.textContent = "The cost preview is unavailable: " + err;
      }
    } finally {
      if (counters.get(form) === n) {
        box.classList.remove("loading");
        box.dataset.done = String(n);
      }
    }
  }

  function schedule(form) {
    clearTimeout(timers.get(form));
    timers.set(form, setTimeout(() => refresh(form), 120));
  }

  function onEdit(event) {
    const form = event.target.closest("form.plan-form");
    if (!form) return;
    const error = form.querySelector(".dialog-error");
    if (error && event.target.name !== "confirm") error.hidden = true; // it was about the last try
    sync(form);
    if (!event.target.hasAttribute("data-no-preview")) schedule(form);
  }

  document.addEventListener("input", onEdit);
  document.addEventListener("change", onEdit);

  document.addEventListener("click", async (event) => {
    const opener = event.target.closest("[data-open]");
    if (opener) {
      const dialog = document.getElementById(opener.dataset.open);
      if (dialog) openDialog(dialog);
      return;
    }
    const closer = event.target.closest("[data-close]");
    if (closer) {
      const dialog = closer.closest("dialog");
      if (dialog) dialog.close();
      return;
    }
    const reveal = event.target.closest("[data-reveal]");
    if (reveal) {
      const code = reveal.parentElement.querySelector(".secret");
      if (code.dataset.hidden === "false") {
        code.textContent = "•".repeat(32);
        code.dataset.hidden = "true";
        reveal.textContent = "Show key";
        return;
      }
      reveal.disabled = true;
      try {
        const response = await fetch(reveal.dataset.reveal, { credentials: "same-origin" });
        const body = await response.json();
        code.textContent = body.secret_key || (body.error && body.error.message) || "";
        code.dataset.hidden = "false";
        reveal.textContent = "Hide key";
      } finally {
        reveal.disabled = false;
      }
    }
  });

  // A submitted plan form shows that it is working; the page reloads with the result.
  document.addEventListener("submit", (event) => {
    const button = event.target.querySelector("[data-confirm]");
    if (button) {
      button.classList.add("busy");
    }
  });

  document.querySelectorAll("[data-autosubmit]").forEach((el) => {
    el.addEventListener("change", () => {
      if (el.value) el.form.submit();
    });
  });

  document.querySelectorAll("dialog[data-autoopen]").forEach(openDialog);
})();
