/* bcryptprimitives.dll for Wine 8.0 (Debian 12), which does not ship it.
 *
 * Rust's std (1.78 and later) imports ProcessPrng from bcryptprimitives.dll for its random
 * numbers (HashMap keys, ...). Without this DLL every Rust test executable fails to load under
 * Wine 8 ("bcryptprimitives.dll not found", exit code 53). ProcessPrng has the contract
 * "fill the buffer, always returns TRUE"; RtlGenRandom (advapi32!SystemFunction036), which Wine
 * implements, does the same for at most ULONG bytes per call.
 *
 * Built and installed into the Wine prefix by scripts/windows.sh; never shipped. */
#include <windows.h>
#include <ntsecapi.h>

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG chunk = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (!RtlGenRandom(data, chunk))
            return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}

BOOL WINAPI DllMain(HINSTANCE instance, DWORD reason, LPVOID reserved)
{
    (void)instance;
    (void)reason;
    (void)reserved;
    return TRUE;
}
