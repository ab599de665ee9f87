//! Human-readable durations (`500ms`, `30s`) and sizes (`1MiB`) for configuration files.

use std::time::Duration;

/// Parses a duration written as a whole number followed by a unit: `ms`, `s`, `m` or `h`
/// (`250ms`, `30s`, `5m`, `1h`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let expected = || {
        format!("`{text}` is not a duration; write a whole number and a unit: 250ms, 30s, 5m, 1h")
    };
    let amount: u64 = digits.parse().map_err(|_| expected())?;
    let millis_per_unit = match unit.trim() {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(expected()),
    };
    amount
        .checked_mul(millis_per_unit)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("`{text}` is too long a duration"))
}

/// Parses a size in bytes: a whole number, optionally followed by `B`, `KiB`, `MiB` or `GiB`
/// (`1048576`, `512KiB`, `64MiB`). Decimal units (`KB`, `MB`, `GB`) are accepted as powers of
/// 1000.
pub fn parse_byte_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let expected = || {
        format!(
            "`{text}` is not a size; write a number of bytes or a number and a unit: 512KiB, 64MiB, 1GiB"
        )
    };
    let amount: u64 = digits.parse().map_err(|_| expected())?;
    let multiplier: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return Err(expected()),
    };
    amount
        .checked_mul(multiplier)
        .ok_or_else(|| format!("`{text}` is too large a size"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_duration(text: &str, expected: Result<u64, ()>) {
        assert_eq!(
            parse_duration(text)
                .map(|d| d.as_millis() as u64)
                .map_err(|_| ()),
            expected,
            "{text}"
        );
    }

    fn check_size(text: &str, expected: Result<u64, ()>) {
        assert_eq!(parse_byte_size(text).map_err(|_| ()), expected, "{text}");
    }

    #[test]
    fn durations() {
        check_duration("250ms", Ok(250));
        check_duration("30s", Ok(30_000));
        check_duration(" 5m ", Ok(300_000));
        check_duration("1h", Ok(3_600_000));
        check_duration("0s", Ok(0));
        check_duration("30", Err(()));
        check_duration("s", Err(()));
        check_duration("1.5s", Err(()));
        check_duration("-1s", Err(()));
        check_duration("10d", Err(()));
        check_duration("99999999999999999999s", Err(()));
    }

    #[test]
    fn sizes() {
        check_size("1024", Ok(1024));
        check_size("1MiB", Ok(1 << 20));
        check_size("512 KiB", Ok(512 << 10));
        check_size("2GiB", Ok(2 << 30));
        check_size("10MB", Ok(10_000_000));
        check_size("1.5MiB", Err(()));
        check_size("MiB", Err(()));
        check_size("1TiB", Err(()));
    }

    #[test]
    fn error_messages_show_the_text_and_the_expected_form() {
        let message = parse_duration("5x").unwrap_err();
        assert!(
            message.contains("`5x`") && message.contains("30s"),
            "{message}"
        );
    }
}
