from catalog.fingerprint import digest, file_fingerprint


def test_known_vectors(tmp_path):
    assert digest(b"abc") == "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    # GB/T 32905-2016 example 1
    assert digest(b"abc", "sm3") == "sm3:66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
    p = tmp_path / "f"
    p.write_bytes(b"abc" * 1_000_000)
    assert file_fingerprint(p, chunk=4096) == digest(b"abc" * 1_000_000)
