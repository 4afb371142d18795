"""Versioned schema migrations, applied in numeric order by playhouse.migrations.

Each file declares frozen copies of the models it creates; never edit a
released migration, add a new one.
"""
