"""The admin API under `/v1/`: one module per route group, assembled by `worker.http.api.routes`."""
