"""`converse-worker` command line: `main` parses (worker.cli.main), one module per command group, and the
`call` command's WHIP and media-streams clients."""
