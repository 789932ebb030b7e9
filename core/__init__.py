"""What data/ and models/ share, with no TensorFlow: the alphabet, the assignment's CAPTCHA facts, files, archives."""
