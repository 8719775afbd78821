from avmix.cli import main

main()
