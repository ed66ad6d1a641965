"""mgtutor.train"""
