"""placeholder"""


def register(sub, common, writes) -> None:
    pass
