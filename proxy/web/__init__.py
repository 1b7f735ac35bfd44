"""The HTTP edge: routes, handlers, middleware, authentication, webhooks, internal routes."""
