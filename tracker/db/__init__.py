"""The database: store, embedded server, settings, redaction, documents, migrations, schema."""
