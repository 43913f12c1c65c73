from signery.cli import main

main()
