"""mgtutor.ssm"""
