"""The archiver's services; each folder is one process and never imports another."""
