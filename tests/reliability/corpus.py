"""What every fault-corpus case asserts about a refused command."""


def assert_refused(code, output, culprit):
    """Exit status 2, exactly one ``error:`` line, naming ``culprit``, and no traceback."""
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert code == 2, output
    assert len(errors) == 1 and culprit in errors[0], output
    assert "Traceback" not in output
