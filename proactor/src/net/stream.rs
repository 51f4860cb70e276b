//! The I/O methods every connected stream socket shares (TCP and Unix streams and their halves),
//! written once as macros so the public types stay plain structs with their own docs.
//!
//! Each method clones the socket's `Rc<OwnedFd>` into the operation — a reference-count bump, no
//! allocation — so the per-operation cost is the operation's box and nothing else.

/// Expands, inside an `impl` block of a type with a `fd: Rc<OwnedFd>` field, to the receiving
/// methods: `read`, `readv`, `recv`, `peek`, `read_pooled`, and the composed `read_exact`,
/// `read_to_end`, `copy_to` (which need [`impl_async_read`] on the type).
macro_rules! read_methods {
    () => {
        /// Receives into `buf` (up to its capacity). `Ok(0)` means the peer closed its side.
        /// The buffer comes back either way; after a read into a `Vec`, its length is the count.
        pub fn read<B: $crate::buf::IoBufMut>(
            &self,
            buf: B,
        ) -> $crate::Op<$crate::op::Recv<std::rc::Rc<std::os::fd::OwnedFd>, B>> {
            $crate::submit($crate::op::Recv::new(self.fd.clone(), buf))
        }

        /// `read` that waits for data before its first attempt ([`Recv::poll_first`]), for a
        /// receive expected to find nothing yet (the compat adapter's, after a short one).
        ///
        /// [`Recv::poll_first`]: $crate::op::Recv::poll_first
        #[allow(dead_code)]
        pub(crate) fn read_polling_first<B: $crate::buf::IoBufMut>(
            &self,
            buf: B,
        ) -> $crate::Op<$crate::op::Recv<std::rc::Rc<std::os::fd::OwnedFd>, B>> {
            $crate::submit($crate::op::Recv::new(self.fd.clone(), buf).poll_first(true))
        }

        /// Receives into several buffers in order, filling each to its capacity before the next.
        pub fn readv<V>(
            &self,
            bufs: V,
        ) -> $crate::Op<$crate::op::Readv<std::rc::Rc<std::os::fd::OwnedFd>, V>>
        where
            V: $crate::buf::IoVecBuf,
            V::Item: $crate::buf::IoBufMut,
        {
            $crate::submit($crate::op::Readv::new(self.fd.clone(), bufs, None))
        }

        /// Receives with `MSG_*` flags (for example `MSG_WAITALL`).
        pub fn recv<B: $crate::buf::IoBufMut>(
            &self,
            buf: B,
            flags: i32,
        ) -> $crate::Op<$crate::op::Recv<std::rc::Rc<std::os::fd::OwnedFd>, B>> {
            $crate::submit($crate::op::Recv::new(self.fd.clone(), buf).flags(flags))
        }

        /// Receives without removing the data from the socket's queue (`MSG_PEEK`).
        pub fn peek<B: $crate::buf::IoBufMut>(
            &self,
            buf: B,
        ) -> $crate::Op<$crate::op::Recv<std::rc::Rc<std::os::fd::OwnedFd>, B>> {
            self.recv(buf, libc::MSG_PEEK)
        }

        /// Receives into a buffer taken from `pool` only once data has arrived, so a connection
        /// waiting for its peer holds no receive buffer (see [`crate::buf::BufPool`]).
        /// `Ok(None)` means the peer closed its side.
        pub async fn read_pooled(
            &self,
            pool: &$crate::buf::BufPool,
        ) -> std::io::Result<Option<$crate::buf::PooledBuf>> {
            pool.recv(self.fd.clone()).await
        }

        /// Every chunk that arrives, each in a buffer of `pool` taken only once its data is
        /// there: one multishot receive where the driver has it (see
        /// [`crate::buf::RecvStream`]). The stream ends when the peer closes its side.
        pub fn recv_stream(
            &self,
            pool: &$crate::buf::BufPool,
        ) -> $crate::buf::RecvStream<std::rc::Rc<std::os::fd::OwnedFd>> {
            pool.recv_stream(self.fd.clone())
        }

        /// Receives until `buf` is full (all of `bytes_total()`), however many reads it takes
        /// (see [`crate::io::read_exact`]). End of stream first is an `UnexpectedEof` error; the
        /// buffer comes back holding what did arrive.
        pub async fn read_exact<B: $crate::buf::IoBufMut>(
            &self,
            buf: B,
        ) -> $crate::BufResult<(), B> {
            $crate::io::read_exact(&mut &*self, buf).await
        }

        /// Receives until the peer closes its side, appending to `buf` (see
        /// [`crate::io::read_to_end`]); returns the count appended.
        pub async fn read_to_end(&self, buf: Vec<u8>) -> $crate::BufResult<usize, Vec<u8>> {
            $crate::io::read_to_end(&mut &*self, buf).await
        }

        /// Copies everything received, until the peer closes its side, into `writer` (see
        /// [`crate::io::copy`]); returns the count.
        pub async fn copy_to<W>(&self, writer: &mut W) -> std::io::Result<u64>
        where
            W: $crate::io::AsyncWriteOwned + ?Sized,
        {
            $crate::io::copy(&mut &*self, writer).await
        }
    };
}

/// Expands, inside an `impl` block of a type with a `fd: Rc<OwnedFd>` field, to the sending
/// methods: `write`, `writev`, `send`, `shutdown`, and the composed `write_all` (which needs
/// [`impl_async_write`] on the type).
macro_rules! write_methods {
    () => {
        /// Sends the initialised bytes of `buf`; a short count is a partial write (see
        /// `write_all`). Never raises `SIGPIPE`: a closed peer is an `EPIPE` error.
        pub fn write<B: $crate::buf::IoBuf>(
            &self,
            buf: B,
        ) -> $crate::Op<$crate::op::Send<std::rc::Rc<std::os::fd::OwnedFd>, B>> {
            $crate::submit($crate::op::Send::new(self.fd.clone(), buf))
        }

        /// Sends several buffers in order (`writev`); a short count is a partial write.
        pub fn writev<V: $crate::buf::IoVecBuf>(
            &self,
            bufs: V,
        ) -> $crate::Op<$crate::op::Writev<std::rc::Rc<std::os::fd::OwnedFd>, V>> {
            $crate::submit($crate::op::Writev::new(self.fd.clone(), bufs, None))
        }

        /// Sends the initialised bytes of `buf` without copying them (io_uring `SEND_ZC`;
        /// an ordinary send on epoll): the buffer comes back once the kernel no longer reads
        /// it. For large sends to real network devices; see [`crate::op::SendZc`].
        pub fn send_zc<B: $crate::buf::IoBuf>(
            &self,
            buf: B,
        ) -> $crate::Op<$crate::op::SendZc<std::rc::Rc<std::os::fd::OwnedFd>, B>> {
            $crate::submit($crate::op::SendZc::new(self.fd.clone(), buf))
        }

        /// Sends with extra `MSG_*` flags (`MSG_NOSIGNAL` is always set).
        pub fn send<B: $crate::buf::IoBuf>(
            &self,
            buf: B,
            flags: i32,
        ) -> $crate::Op<$crate::op::Send<std::rc::Rc<std::os::fd::OwnedFd>, B>> {
            $crate::submit($crate::op::Send::new(self.fd.clone(), buf).flags(flags))
        }

        /// Shuts down the read side, the write side (the peer then reads end-of-stream), or both.
        pub fn shutdown(
            &self,
            how: std::net::Shutdown,
        ) -> $crate::Op<$crate::op::Shutdown<std::rc::Rc<std::os::fd::OwnedFd>>> {
            $crate::submit($crate::op::Shutdown::new(self.fd.clone(), how))
        }

        /// Sends every initialised byte of `buf`, however many sends it takes (see
        /// [`crate::io::write_all`]). The buffer comes back either way.
        pub async fn write_all<B: $crate::buf::IoBuf>(&self, buf: B) -> $crate::BufResult<(), B> {
            $crate::io::write_all(&mut &*self, buf).await
        }
    };
}

/// Implements [`crate::io::AsyncReadOwned`] for a type (and a shared reference to it) that has
/// the inherent `read` of [`read_methods`].
macro_rules! impl_async_read {
    ($ty:ty) => {
        impl $crate::io::AsyncReadOwned for $ty {
            fn read<B: $crate::buf::IoBufMut>(
                &mut self,
                buf: B,
            ) -> impl std::future::Future<Output = $crate::BufResult<usize, B>> {
                <$ty>::read(self, buf)
            }
        }
        impl $crate::io::AsyncReadOwned for &$ty {
            fn read<B: $crate::buf::IoBufMut>(
                &mut self,
                buf: B,
            ) -> impl std::future::Future<Output = $crate::BufResult<usize, B>> {
                <$ty>::read(*self, buf)
            }
        }
    };
}

/// Implements [`crate::io::AsyncWriteOwned`] for a type (and a shared reference to it) that has
/// the inherent `write` and `shutdown` of [`write_methods`]; the trait's `shutdown` shuts the
/// write side down.
macro_rules! impl_async_write {
    ($ty:ty) => {
        impl $crate::io::AsyncWriteOwned for $ty {
            fn write<B: $crate::buf::IoBuf>(
                &mut self,
                buf: B,
            ) -> impl std::future::Future<Output = $crate::BufResult<usize, B>> {
                <$ty>::write(self, buf)
            }
            fn shutdown(&mut self) -> impl std::future::Future<Output = std::io::Result<()>> {
                <$ty>::shutdown(self, std::net::Shutdown::Write)
            }
        }
        impl $crate::io::AsyncWriteOwned for &$ty {
            fn write<B: $crate::buf::IoBuf>(
                &mut self,
                buf: B,
            ) -> impl std::future::Future<Output = $crate::BufResult<usize, B>> {
                <$ty>::write(*self, buf)
            }
            fn shutdown(&mut self) -> impl std::future::Future<Output = std::io::Result<()>> {
                <$ty>::shutdown(*self, std::net::Shutdown::Write)
            }
        }
    };
}

/// Expands to the address and descriptor accessors shared by connected sockets.
macro_rules! socket_common {
    () => {
        /// The socket's descriptor number (still owned by the socket).
        pub fn as_raw_fd(&self) -> std::os::fd::RawFd {
            std::os::fd::AsRawFd::as_raw_fd(&*self.fd)
        }

        /// A `socket2` view of the socket, for options this type does not wrap.
        pub fn as_socket(&self) -> socket2::SockRef<'_> {
            socket2::SockRef::from(&*self.fd)
        }

        /// The pending socket error (`SO_ERROR`), cleared by reading it.
        pub fn take_error(&self) -> std::io::Result<Option<std::io::Error>> {
            self.as_socket().take_error()
        }
    };
}

pub(crate) use {impl_async_read, impl_async_write, read_methods, socket_common, write_methods};
