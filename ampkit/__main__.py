from ampkit.cli import main

main()
