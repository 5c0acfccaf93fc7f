"""The README's client example runs as written against a real server."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import Cli
from tests.v4client import Server

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_client_example_runs(tmp_path: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    example = next(b for b in blocks if "ChatClient" in b)
    db = f"sqlite:///{tmp_path / 'readme.db'}"
    imcloud = Cli(db)
    imcloud("init")
    app = imcloud("app", "create", "readme")
    server = Server(db)
    try:
        code = re.sub(
            r"^SDKAPPID, KEY, URL = .*$",
            f'SDKAPPID, KEY, URL = {app["sdkappid"]}, "{app["secret_key"]}", "{server.base}"',
            example, count=1, flags=re.M)
        assert code != example
        script = tmp_path / "example.py"
        script.write_text(code)
        done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                              timeout=60)
    finally:
        server.stop()
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "alice hi bob"
