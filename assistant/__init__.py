"""Dossier: question answering over news articles, with answers that cite the exact passages they rest on."""

__version__ = "0.1.0"
