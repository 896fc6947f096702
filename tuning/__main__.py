from tuning.cli import run

run()
