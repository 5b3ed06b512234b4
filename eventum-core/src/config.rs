//! Limits and timeouts of a [`Connection`](crate::Connection), with documented defaults.

use std::time::Duration;

use crate::error::ConfigError;
use crate::handshake::DeflateConfig;

/// What happens to a message pushed to a connection by someone else (a broadcast, a send
/// by connection id) when that connection's outgoing buffer is over
/// [`ConfigBuilder::max_backlog`].
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SlowConsumerPolicy {
    /// Drop the message; the connection stays open. The push returns
    /// [`SendError::Full`](crate::SendError::Full).
    Drop,
    /// Close the connection with 1008 (policy violation): a client that does not read
    /// gets disconnected instead of making the server buffer. The default.
    #[default]
    Close,
}

/// Keepalive: ping a silent peer, and give up on it when it stays silent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    /// Send a ping after this long without receiving anything.
    pub interval: Duration,
    /// Close with 1011 "keepalive timeout" when nothing arrives this long after the ping.
    pub timeout: Duration,
}

/// Immutable settings shared by many connections (wrap it in an `Arc`).
///
/// ```
/// use eventum_core::Config;
/// use std::time::Duration;
///
/// let config = Config::builder()
///     .max_message_size(64 << 20)
///     .max_frame_size(64 << 20)
///     .keepalive(None)
///     .close_timeout(Duration::from_secs(2))
///     .build()
///     .unwrap();
/// assert_eq!(config.max_message_size(), 64 << 20);
/// assert_eq!(Config::default().max_message_size(), 1 << 20);
/// ```
#[derive(Debug, Clone)]
pub struct Config {
    max_head_bytes: usize,
    max_headers: usize,
    max_frame_size: usize,
    max_message_size: usize,
    high_water: usize,
    low_water: usize,
    max_backlog: usize,
    slow_consumer: SlowConsumerPolicy,
    handshake_timeout: Option<Duration>,
    close_timeout: Duration,
    keepalive: Option<Keepalive>,
    http_fallback: bool,
    compression: DeflateConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_head_bytes: 16 * 1024,
            max_headers: 100,
            max_frame_size: 1 << 20,
            max_message_size: 1 << 20,
            high_water: 1 << 20,
            low_water: 256 * 1024,
            max_backlog: 8 << 20,
            slow_consumer: SlowConsumerPolicy::Close,
            handshake_timeout: Some(Duration::from_secs(10)),
            close_timeout: Duration::from_secs(5),
            keepalive: Some(Keepalive {
                interval: Duration::from_secs(30),
                timeout: Duration::from_secs(30),
            }),
            http_fallback: false,
            compression: DeflateConfig::default(),
        }
    }
}

impl Config {
    /// A builder starting from the defaults.
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder {
            config: Config::default(),
        }
    }

    /// Largest request head (request line + headers + blank line) in bytes; default 16 KiB.
    /// Beyond it the core answers `431`.
    pub fn max_head_bytes(&self) -> usize {
        self.max_head_bytes
    }
    /// Most header fields in the request; default 100. Beyond it the core answers `431`.
    pub fn max_headers(&self) -> usize {
        self.max_headers
    }
    /// Largest frame payload accepted; default 1 MiB. Beyond it: close 1009.
    pub fn max_frame_size(&self) -> usize {
        self.max_frame_size
    }
    /// Largest message (all fragments together) accepted; default 1 MiB. Beyond it: close 1009.
    pub fn max_message_size(&self) -> usize {
        self.max_message_size
    }
    /// Outgoing bytes above which [`Connection::wants_read`](crate::Connection::wants_read)
    /// turns false; default 1 MiB.
    pub fn high_water(&self) -> usize {
        self.high_water
    }
    /// Outgoing bytes at or below which reading resumes; default 256 KiB.
    pub fn low_water(&self) -> usize {
        self.low_water
    }
    /// Hard limit of outgoing bytes; default 8 MiB. Own sends beyond it fail with
    /// [`SendError::Full`](crate::SendError::Full); pushed messages follow the
    /// [`SlowConsumerPolicy`].
    pub fn max_backlog(&self) -> usize {
        self.max_backlog
    }
    /// What to do with pushed messages over the backlog; default [`SlowConsumerPolicy::Close`].
    pub fn slow_consumer(&self) -> SlowConsumerPolicy {
        self.slow_consumer
    }
    /// Time allowed for the request head to arrive; default 10 s (`None`: no limit).
    pub fn handshake_timeout(&self) -> Option<Duration> {
        self.handshake_timeout
    }
    /// Time allowed for the peer's close reply, and for flushing the last bytes before the
    /// transport is dropped; default 5 s.
    pub fn close_timeout(&self) -> Duration {
        self.close_timeout
    }
    /// Keepalive settings; default ping after 30 s of silence, give up 30 s later.
    pub fn keepalive(&self) -> Option<Keepalive> {
        self.keepalive
    }
    /// Whether plain HTTP requests (not upgrades) are reported as
    /// [`Event::HttpRequest`](crate::Event::HttpRequest) for the application to answer;
    /// default `false`: the core answers them with `400`.
    pub fn http_fallback(&self) -> bool {
        self.http_fallback
    }
    /// The permessage-deflate settings (RFC 7692): on by default, with the defaults and
    /// measured memory documented on [`DeflateConfig`]. A compressed message counts
    /// against [`max_message_size`](Self::max_message_size) by its inflated size.
    pub fn compression(&self) -> &DeflateConfig {
        &self.compression
    }
}

impl Config {
    /// The same settings with plain HTTP requests reported (an app with a fallback).
    pub(crate) fn with_http_fallback(mut self, enabled: bool) -> Self {
        self.http_fallback = enabled;
        self
    }
}

/// Builds a validated [`Config`].
#[derive(Debug, Clone)]
pub struct ConfigBuilder {
    config: Config,
}

impl ConfigBuilder {
    /// See [`Config::max_head_bytes`].
    pub fn max_head_bytes(mut self, bytes: usize) -> Self {
        self.config.max_head_bytes = bytes;
        self
    }
    /// See [`Config::max_headers`].
    pub fn max_headers(mut self, count: usize) -> Self {
        self.config.max_headers = count;
        self
    }
    /// See [`Config::max_frame_size`].
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.config.max_frame_size = bytes;
        self
    }
    /// See [`Config::max_message_size`].
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.config.max_message_size = bytes;
        self
    }
    /// Sets the high and low water marks of the outgoing buffer; see [`Config::high_water`].
    pub fn water_marks(mut self, high: usize, low: usize) -> Self {
        self.config.high_water = high;
        self.config.low_water = low;
        self
    }
    /// See [`Config::max_backlog`].
    pub fn max_backlog(mut self, bytes: usize) -> Self {
        self.config.max_backlog = bytes;
        self
    }
    /// See [`Config::slow_consumer`].
    pub fn slow_consumer(mut self, policy: SlowConsumerPolicy) -> Self {
        self.config.slow_consumer = policy;
        self
    }
    /// See [`Config::handshake_timeout`].
    pub fn handshake_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.config.handshake_timeout = timeout;
        self
    }
    /// See [`Config::close_timeout`].
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.config.close_timeout = timeout;
        self
    }
    /// See [`Config::keepalive`]; `None` switches keepalive off.
    pub fn keepalive(mut self, keepalive: Option<Keepalive>) -> Self {
        self.config.keepalive = keepalive;
        self
    }
    /// See [`Config::http_fallback`].
    pub fn http_fallback(mut self, enabled: bool) -> Self {
        self.config.http_fallback = enabled;
        self
    }
    /// See [`Config::compression`]; `DeflateConfig::disabled()` switches it off.
    pub fn compression(mut self, compression: DeflateConfig) -> Self {
        self.config.compression = compression;
        self
    }

    /// Checks the settings and returns the config.
    pub fn build(self) -> Result<Config, ConfigError> {
        let c = self.config;
        let positive = [
            (c.max_head_bytes, "max_head_bytes"),
            (c.max_headers, "max_headers"),
            (c.max_frame_size, "max_frame_size"),
            (c.max_message_size, "max_message_size"),
            (c.high_water, "high_water"),
            (c.max_backlog, "max_backlog"),
        ];
        if let Some((_, name)) = positive.iter().find(|(value, _)| *value == 0) {
            return Err(ConfigError::Zero(name));
        }
        if c.max_headers > 10_000 {
            return Err(ConfigError::Inconsistent("max_headers must be at most 10000"));
        }
        if c.low_water > c.high_water {
            return Err(ConfigError::Inconsistent("low_water must not exceed high_water"));
        }
        if c.high_water > c.max_backlog {
            return Err(ConfigError::Inconsistent("high_water must not exceed max_backlog"));
        }
        if c.close_timeout.is_zero() {
            return Err(ConfigError::Zero("close_timeout"));
        }
        if let Some(k) = c.keepalive {
            if k.interval.is_zero() || k.timeout.is_zero() {
                return Err(ConfigError::Zero("keepalive interval and timeout"));
            }
        }
        if c.handshake_timeout.is_some_and(|t| t.is_zero()) {
            return Err(ConfigError::Zero("handshake_timeout"));
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = Config::default();
        assert_eq!(c.max_head_bytes(), 16384);
        assert_eq!(c.max_headers(), 100);
        assert_eq!(c.max_frame_size(), 1 << 20);
        assert_eq!(c.max_message_size(), 1 << 20);
        assert_eq!(c.high_water(), 1 << 20);
        assert_eq!(c.max_backlog(), 8 << 20);
        assert_eq!(c.slow_consumer(), SlowConsumerPolicy::Close);
        assert_eq!(c.handshake_timeout(), Some(Duration::from_secs(10)));
        assert_eq!(c.close_timeout(), Duration::from_secs(5));
        let k = c.keepalive().unwrap();
        assert_eq!(
            (k.interval, k.timeout),
            (Duration::from_secs(30), Duration::from_secs(30))
        );
        assert!(!c.http_fallback());
        assert!(Config::builder().build().is_ok());
    }

    #[test]
    fn invalid_settings_are_refused() {
        assert_eq!(
            Config::builder().max_frame_size(0).build().unwrap_err(),
            ConfigError::Zero("max_frame_size")
        );
        assert!(matches!(
            Config::builder().water_marks(10, 20).build(),
            Err(ConfigError::Inconsistent(_))
        ));
        assert!(matches!(
            Config::builder().water_marks(100 << 20, 1).build(),
            Err(ConfigError::Inconsistent(_))
        ));
        assert!(Config::builder().close_timeout(Duration::ZERO).build().is_err());
        let zero = Keepalive {
            interval: Duration::ZERO,
            timeout: Duration::from_secs(1),
        };
        assert!(Config::builder().keepalive(Some(zero)).build().is_err());
        assert!(Config::builder()
            .handshake_timeout(Some(Duration::ZERO))
            .build()
            .is_err());
        assert!(Config::builder()
            .handshake_timeout(None)
            .keepalive(None)
            .build()
            .is_ok());
    }
}
