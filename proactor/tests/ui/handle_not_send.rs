//! A handle shares its proactor's state with the loop's thread: moving one to another thread
//! does not compile (another thread posts work through a `RemoteHandle` instead).
use proactor::{Handle, Proactor};

fn to_another_thread<T: Send + 'static>(value: T) {
    std::thread::spawn(move || drop(value));
}

fn main() -> std::io::Result<()> {
    let p = Proactor::new()?;
    let handle: Handle = p.handle();
    to_another_thread(handle);
    Ok(())
}
