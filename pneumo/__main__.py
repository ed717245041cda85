from pneumo.cli import main

main()
