//! Whether a program is running, by its executable's file name (Windows only): Outlook reads its
//! policies and account settings at start, so the agent reports what it writes while Outlook
//! runs as pending a restart.

use windows_sys::Win32::Foundation::{CloseHandle, INVALID_HANDLE_VALUE};
use windows_sys::Win32::System::Diagnostics::ToolHelp::{
    CreateToolhelp32Snapshot, Process32FirstW, Process32NextW, PROCESSENTRY32W, TH32CS_SNAPPROCESS,
};

/// Whether any process's executable file name equals `exe` (ignoring ASCII case), e.g.
/// `OUTLOOK.EXE`. `None` if the process list could not be read.
pub fn is_running(exe: &str) -> Option<bool> {
    // SAFETY: the snapshot handle is checked and closed; PROCESSENTRY32W is initialised with its
    // size as the API requires, and szExeFile is NUL-terminated within its fixed buffer.
    unsafe {
        let snapshot = CreateToolhelp32Snapshot(TH32CS_SNAPPROCESS, 0);
        if snapshot == INVALID_HANDLE_VALUE {
            return None;
        }
        let mut entry = PROCESSENTRY32W {
            dwSize: std::mem::size_of::<PROCESSENTRY32W>() as u32,
            ..Default::default()
        };
        let mut found = false;
        let mut more = Process32FirstW(snapshot, &mut entry) != 0;
        while more {
            let len = entry
                .szExeFile
                .iter()
                .position(|&c| c == 0)
                .unwrap_or(entry.szExeFile.len());
            let name = String::from_utf16_lossy(&entry.szExeFile[..len]);
            if name.eq_ignore_ascii_case(exe) {
                found = true;
                break;
            }
            more = Process32NextW(snapshot, &mut entry) != 0;
        }
        CloseHandle(snapshot);
        Some(found)
    }
}
