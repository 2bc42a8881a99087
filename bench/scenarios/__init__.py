"""One module per scenario; each `run(quick)` returns a `Result`."""
