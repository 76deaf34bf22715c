from mnistres.cli import main

main()
