"""Who may do what: identities (tokens -> `Principal`), TOTP second factor, the role x permission table, and
`Security` (authenticator + audit log) shared by the CLI and the HTTP app."""
