"""mgtutor.eval"""
