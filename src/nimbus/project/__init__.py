"""Project files, client side: `serverless.yml` and AWS SAM `template.yaml` parsed into one model of a service
(functions, events, packaging), its variables resolved, its packages built, and the plan of changes against what
a server runs. Used by the CLI only; it imports nothing from the server's packages."""
