"""The platform's certificate authority and certificate verification."""
