"""One router per resource: packages (read), uploads and publishing (write), health."""
