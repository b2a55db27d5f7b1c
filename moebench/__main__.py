from moebench.cli import entry

entry()
