"""One thin module per command of `python -m kit`: parse the arguments, take the lock, call the stage,
report. A command module holds no stage logic, and no stage module imports a command."""
