"""The integration lane: the database and real Redis, in this process."""
