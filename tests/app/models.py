from django.db import models


class Note(models.Model):
    """A row tasks write, to observe atomicity and exactly-once effects."""

    text = models.CharField(max_length=200)
