"""Services: the only writers. Each opens a transaction, asks the pure rules, writes."""
