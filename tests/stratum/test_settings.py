import pytest

from pool.errors import ConfigError
from pool.stratum.settings import StratumSettings


def test_defaults_match_the_documented_limits():
    settings = StratumSettings()
    assert settings.max_line_bytes == 16384
    assert settings.extranonce2_size == 8
    assert settings.version_mask == 0x1FFFE000
    assert settings.vardiff_target_share_interval_s == 10.0


def test_from_mapping_converts_and_validates():
    settings = StratumSettings.from_mapping(
        {"listen": ["0.0.0.0:3333", "[::]:3334"], "min_difficulty": 1, "extranonce2_size": 4}
    )
    assert settings.listen == ("0.0.0.0:3333", "[::]:3334")
    assert settings.min_difficulty == 1.0 and isinstance(settings.min_difficulty, float)


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"extranonce2_size": 9}, "stratum.extranonce2_size"),
        ({"extranonce2_size": 3}, "stratum.extranonce2_size"),
        ({"max_line_bytes": "16k"}, "stratum.max_line_bytes"),
        ({"min_difficulty": True}, "stratum.min_difficulty"),
        ({"start_difficulty": 10**400}, "stratum.start_difficulty"),
        ({"max_difficulty": float("nan")}, "stratum.max_difficulty"),
        ({"listen": "127.0.0.1:3333"}, "stratum.listen"),
        ({"listen": ["localhost"]}, "stratum.listen[0]"),
        ({"start_difficulty": 1e-12, "min_difficulty": 1.0}, "stratum.start_difficulty"),
        ({"tls_listen": ["127.0.0.1:3443"]}, "stratum.tls_listen"),
        ({"no_such_limit": 1}, "stratum.no_such_limit"),
    ],
)
def test_errors_name_the_key(raw, key):
    with pytest.raises(ConfigError) as info:
        StratumSettings.from_mapping(raw)
    assert info.value.key == key


def test_log_settings_logs_every_field_once():
    seen = []

    class Logger:
        def info(self, event, **fields):
            seen.append((event, fields))

    StratumSettings().log_settings(Logger())
    ((_event, fields),) = seen
    assert fields["version_mask"] == "1fffe000"
    assert set(fields) == set(StratumSettings.__dataclass_fields__)
