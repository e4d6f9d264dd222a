"""The HTTP app: WHIP and media streams mounted from the call side, health, metrics, the admin API under
`/v1/` (worker.http.api), bearer authentication, admission control, CORS and the OpenAPI document."""
