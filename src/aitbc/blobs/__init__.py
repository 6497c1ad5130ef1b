"""Blob storage for input files and result packages: one interface, a local folder by default."""
