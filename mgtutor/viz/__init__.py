"""mgtutor.viz"""
