from tuning.cli import main

main()
