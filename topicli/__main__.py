from topicli.cli import main

main()
