//! An operation future and a local task's `JoinHandle` are tied to the loop that polls them:
//! moving one to another thread does not compile.
use proactor::{op, JoinHandle, Proactor};

fn to_another_thread<T: Send + 'static>(value: T) {
    std::thread::spawn(move || drop(value));
}

fn main() -> std::io::Result<()> {
    let p = Proactor::new()?;
    let nop = proactor::submit(op::Nop);
    let task: JoinHandle<()> = p.handle().spawn(async {});
    to_another_thread(nop);
    to_another_thread(task);
    Ok(())
}
