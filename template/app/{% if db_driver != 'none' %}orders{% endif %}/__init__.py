"""The example domain: orders with their customer and items (router, schemas, service, models)."""
