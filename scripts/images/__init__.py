"""The image builds (`make images`); the rehearsal imports build.py for the revision its images are tagged with."""
