//! Name resolution that never blocks the loop: a literal address is parsed on the spot, a name
//! (`"localhost:8080"`, `("example.org", 443)`) is looked up on the offload pool
//! ([`crate::offload`]) while the loop goes on serving its other connections.

use super::no_address;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// What [`crate::net::TcpStream::connect`] accepts: a socket address (or a list of them), an IP
/// address with a port, or a host name with a port, as `"host:port"` or `(host, port)` — the
/// same forms as `std::net::ToSocketAddrs`. Sealed: the crate resolves each form itself.
pub trait ToSocketAddrs: sealed::Resolve {}

pub(crate) mod sealed {
    use super::*;

    /// What an address needs before a connect: nothing, or a look-up off the loop.
    pub enum Target {
        /// Already addresses (or an address that did not parse).
        Ready(io::Result<Vec<SocketAddr>>),
        /// A name to look up, in a form `std` resolves.
        Name(String),
        /// A host and a port to look up.
        HostPort(String, u16),
    }

    /// Turns an address argument into a [`Target`].
    pub trait Resolve {
        /// The address, parsed, or what to look up.
        fn target(self) -> Target;
    }
}
use sealed::{Resolve, Target};

macro_rules! ready {
    ($($ty:ty),*) => {$(
        impl Resolve for $ty {
            fn target(self) -> Target {
                Target::Ready(Ok(vec![SocketAddr::from(self)]))
            }
        }
        impl ToSocketAddrs for $ty {}
    )*};
}
ready!(
    SocketAddr,
    SocketAddrV4,
    SocketAddrV6,
    (IpAddr, u16),
    (Ipv4Addr, u16),
    (Ipv6Addr, u16),
    ([u8; 4], u16),
    ([u16; 8], u16)
);

impl Resolve for &SocketAddr {
    fn target(self) -> Target {
        Target::Ready(Ok(vec![*self]))
    }
}
impl ToSocketAddrs for &SocketAddr {}

impl Resolve for &[SocketAddr] {
    fn target(self) -> Target {
        Target::Ready(Ok(self.to_vec()))
    }
}
impl ToSocketAddrs for &[SocketAddr] {}

impl Resolve for Vec<SocketAddr> {
    fn target(self) -> Target {
        Target::Ready(Ok(self))
    }
}
impl ToSocketAddrs for Vec<SocketAddr> {}

impl Resolve for &str {
    fn target(self) -> Target {
        match self.parse::<SocketAddr>() {
            Ok(addr) => Target::Ready(Ok(vec![addr])),
            Err(_) => Target::Name(self.to_owned()),
        }
    }
}
impl ToSocketAddrs for &str {}

impl Resolve for String {
    fn target(self) -> Target {
        self.as_str().target()
    }
}
impl ToSocketAddrs for String {}

impl Resolve for &String {
    fn target(self) -> Target {
        self.as_str().target()
    }
}
impl ToSocketAddrs for &String {}

impl Resolve for (&str, u16) {
    fn target(self) -> Target {
        match self.0.parse::<IpAddr>() {
            Ok(ip) => Target::Ready(Ok(vec![SocketAddr::new(ip, self.1)])),
            Err(_) => Target::HostPort(self.0.to_owned(), self.1),
        }
    }
}
impl ToSocketAddrs for (&str, u16) {}

impl Resolve for (String, u16) {
    fn target(self) -> Target {
        (self.0.as_str(), self.1).target()
    }
}
impl ToSocketAddrs for (String, u16) {}

/// Resolves `addr` to its socket addresses without blocking the loop: a literal address at
/// once, a name on the offload pool (the calling task waits; the loop serves the others). An
/// empty result is an error.
///
/// The listeners' and sockets' `bind` are synchronous, like `std`'s: a literal address needs no
/// look-up, and a name given to `bind` is looked up on the calling thread. To bind to a name
/// from a running loop without blocking it, look it up here first and bind the addresses:
///
/// ```
/// let p = proactor::Proactor::new()?;
/// p.block_on(async {
///     let addrs = proactor::net::lookup_host("localhost:0").await?;
///     let listener = proactor::net::TcpListener::bind(&addrs[..])?;
///     assert!(listener.local_addr()?.ip().is_loopback());
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub async fn lookup_host(addr: impl ToSocketAddrs) -> io::Result<Vec<SocketAddr>> {
    resolve(addr).await
}

/// Resolves `addr`: at once for a literal address, on the offload pool for a name (the calling
/// task waits; the loop does not). An empty result is an error naming the input.
pub(crate) async fn resolve(addr: impl ToSocketAddrs) -> io::Result<Vec<SocketAddr>> {
    let addrs = match addr.target() {
        Target::Ready(res) => res?,
        Target::Name(name) => {
            lookup(move || std::net::ToSocketAddrs::to_socket_addrs(&name)).await?
        }
        Target::HostPort(host, port) => {
            lookup(move || std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))).await?
        }
    };
    if addrs.is_empty() {
        return Err(no_address());
    }
    Ok(addrs)
}

/// Runs a `std` look-up on the offload pool.
async fn lookup<F, I>(f: F) -> io::Result<Vec<SocketAddr>>
where
    F: FnOnce() -> io::Result<I> + Send + 'static,
    I: Iterator<Item = SocketAddr>,
{
    crate::offload::offload(move || f().map(|it| it.collect::<Vec<_>>()))
        .await
        .map_err(|e| io::Error::other(format!("name look-up: {e}")))?
}
