from tuning.cli.main import main

main()
