//! A send may borrow only `'static` memory: a borrow of a local buffer could end (and the
//! buffer be freed) while the kernel still reads it.
use proactor::op;

fn main() {
    let v = vec![0u8; 64];
    let send = proactor::submit(op::Send::new(0, &v[..]));
    drop(send);
}
