//! A socket shares its descriptor, through `Rc`, with the operations it has in flight on its
//! thread's proactor: moving one to another thread does not compile.
use proactor::net::{TcpListener, TcpStream, UdpSocket, UnixListener, UnixStream};

fn to_another_thread<T: Send + 'static>(value: T) {
    std::thread::spawn(move || drop(value));
}

fn check(
    tcp: TcpStream,
    listener: TcpListener,
    unix: UnixStream,
    ul: UnixListener,
    udp: UdpSocket,
) {
    to_another_thread(tcp);
    to_another_thread(listener);
    to_another_thread(unix);
    to_another_thread(ul);
    to_another_thread(udp);
}

fn main() {
    let _ = check;
}
