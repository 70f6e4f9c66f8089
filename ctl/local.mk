# ctl/: see README.md. Programs, their unit tests and black-box tests are registered here.
