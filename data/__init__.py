"""Generating, reading and caching CAPTCHA images and their labels."""
