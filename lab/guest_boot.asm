; Boot sector of the lab guests: real "VM disk activity" with almost no CPU.
; Every ~1 s (18 BIOS ticks) it reads sector LBA 2 (CHS 0/0/3), increments the 32-bit counter at its start
; and writes it back through BIOS int 13h, so the image's mtime on the store changes every second.
; It waits with `sti; hlt` on the timer interrupt (measured 0.4-0.8 % of a core under TCG); busy waits or
; int 15h AH=86h cost ~10 times more (DESIGN.md section 7).
; Build: nasm -f bin -o boot.bin guest_boot.asm

bits 16
org 0x7c00

COUNTER_BUF equ 0x0500          ; free conventional memory below the boot sector
BIOS_TICKS  equ 0x046c          ; BIOS tick counter word, 18.2 Hz
TICKS       equ 18

start:
    cli
    xor ax, ax
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov sp, 0x7c00
    sti
    mov [drive], dl             ; the BIOS passes the boot drive in DL

tick:
    mov ax, 0x0201              ; AH=02 read, AL=1 sector
    call counter_sector
    inc dword [COUNTER_BUF]
    mov ax, 0x0301              ; AH=03 write, AL=1 sector
    call counter_sector
    mov ax, [BIOS_TICKS]
    mov [since], ax
idle:
    sti
    hlt                         ; sleep until the next interrupt (the 18.2 Hz timer)
    mov ax, [BIOS_TICKS]
    sub ax, [since]             ; wraps correctly in 16 bits
    cmp ax, TICKS
    jb idle
    jmp tick

; int 13h on the counter sector; AX selects read or write. Errors are ignored: the next tick retries.
counter_sector:
    mov cx, 0x0003              ; cylinder 0, sector 3 (= LBA 2)
    xor dh, dh                  ; head 0
    mov dl, [drive]
    mov bx, COUNTER_BUF
    int 0x13
    ret

drive: db 0
since: dw 0

times 510 - ($ - $$) db 0
dw 0xaa55
