"""Security audit: events, the queued writer, its journal and spool, the SQL store."""
