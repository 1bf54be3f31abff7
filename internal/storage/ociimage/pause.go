package ociimage

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"runtime"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// PauseRef is the name under which nodes know Strata's pause image; the
// containerd CRI config pins it as the sandbox image.
const PauseRef = "localhost/strata/pause:3.10"

// pauseUser is the user the pause container runs as, as upstream's does.
const pauseUser = "65535:65535"

// pauseCode is the pause program for x86-64 Linux: it blocks SIGINT,
// SIGTERM and SIGCHLD, reads them from a signalfd, reaps every exited child
// on SIGCHLD and exits 0 on SIGINT or SIGTERM. Blocked signals are queued
// even for PID 1 of a PID namespace, which ignores unhandled signals.
//
// Checked with `as` + `objdump -d`; offsets are from the start of the code.
func pauseCode() []byte {
	return []byte{
		// 0x00  sub rsp, 256                       ; room: mask at [rsp], siginfo at [rsp+128]
		0x48, 0x81, 0xec, 0x00, 0x01, 0x00, 0x00,
		// 0x07  mov qword [rsp], 0x14002           ; mask = SIGINT(2) | SIGTERM(15) | SIGCHLD(17)
		0x48, 0xc7, 0x04, 0x24, 0x02, 0x40, 0x01, 0x00,
		// 0x0f  rt_sigprocmask(SIG_BLOCK, rsp, NULL, 8)
		0xb8, 0x0e, 0x00, 0x00, 0x00, //             mov eax, 14
		0x31, 0xff, //                               xor edi, edi
		0x48, 0x89, 0xe6, //                         mov rsi, rsp
		0x31, 0xd2, //                               xor edx, edx
		0x41, 0xba, 0x08, 0x00, 0x00, 0x00, //       mov r10d, 8
		0x0f, 0x05, //                               syscall
		// 0x23  signalfd4(-1, rsp, 8, 0)
		0xb8, 0x21, 0x01, 0x00, 0x00, //             mov eax, 289
		0xbf, 0xff, 0xff, 0xff, 0xff, //             mov edi, -1
		0x48, 0x89, 0xe6, //                         mov rsi, rsp
		0xba, 0x08, 0x00, 0x00, 0x00, //             mov edx, 8
		0x45, 0x31, 0xd2, //                         xor r10d, r10d
		0x0f, 0x05, //                               syscall
		// 0x3a  if fd < 0 goto fail; ebx = fd
		0x85, 0xc0, //                               test eax, eax
		0x78, 0x4d, //                               js fail (0x8b)
		0x89, 0xc3, //                               mov ebx, eax
		// 0x40 loop: read(fd, rsp+128, 128)         ; one signalfd_siginfo
		0x31, 0xc0, //                               xor eax, eax
		0x89, 0xdf, //                               mov edi, ebx
		0x48, 0x8d, 0xb4, 0x24, 0x80, 0x00, 0x00, 0x00, // lea rsi, [rsp+128]
		0xba, 0x80, 0x00, 0x00, 0x00, //             mov edx, 128
		0x0f, 0x05, //                               syscall
		// 0x53  > 0: got one; -EINTR: read again; other errors: fail
		0x48, 0x85, 0xc0, //                         test rax, rax
		0x7f, 0x08, //                               jg got (0x60)
		0x48, 0x83, 0xf8, 0xfc, //                   cmp rax, -4
		0x74, 0xe2, //                               je loop (0x40)
		0xeb, 0x2b, //                               jmp fail (0x8b)
		// 0x60 got: ssi_signo != SIGCHLD means SIGINT or SIGTERM: done
		0x83, 0xbc, 0x24, 0x80, 0x00, 0x00, 0x00, 0x11, // cmp dword [rsp+128], 17
		0x75, 0x1d, //                               jne done (0x87)
		// 0x6a reap: wait4(-1, NULL, WNOHANG, NULL) until it returns <= 0
		0xb8, 0x3d, 0x00, 0x00, 0x00, //             mov eax, 61
		0xbf, 0xff, 0xff, 0xff, 0xff, //             mov edi, -1
		0x31, 0xf6, //                               xor esi, esi
		0xba, 0x01, 0x00, 0x00, 0x00, //             mov edx, 1
		0x45, 0x31, 0xd2, //                         xor r10d, r10d
		0x0f, 0x05, //                               syscall
		0x48, 0x85, 0xc0, //                         test rax, rax
		0x7f, 0xe5, //                               jg reap (0x6a)
		0xeb, 0xb9, //                               jmp loop (0x40)
		// 0x87 done: status 0
		0x31, 0xff, //                               xor edi, edi
		0xeb, 0x05, //                               jmp exit (0x90)
		// 0x8b fail: status 1
		0xbf, 0x01, 0x00, 0x00, 0x00, //             mov edi, 1
		// 0x90 exit: exit_group(edi)
		0xb8, 0xe7, 0x00, 0x00, 0x00, //             mov eax, 231
		0x0f, 0x05, //                               syscall
	}
}

// pauseLoadAddr is where the executable is mapped (the classic non-PIE base).
const pauseLoadAddr = 0x400000

// PauseExecutable returns the pause program as a static ELF executable for
// goarch. Only amd64 is supported.
func PauseExecutable(goarch string) ([]byte, error) {
	if goarch != "amd64" {
		return nil, fmt.Errorf("pause executable: architecture %q is not supported (only amd64)", goarch)
	}
	const (
		ehsize    = 64 // sizeof(Elf64_Ehdr)
		phentsize = 56 // sizeof(Elf64_Phdr)
		phnum     = 2
		codeOff   = ehsize + phnum*phentsize
	)
	code := pauseCode()
	size := uint64(codeOff + len(code))
	hdr := elf.Header64{
		Type:      uint16(elf.ET_EXEC),
		Machine:   uint16(elf.EM_X86_64),
		Version:   uint32(elf.EV_CURRENT),
		Entry:     pauseLoadAddr + codeOff,
		Phoff:     ehsize,
		Ehsize:    ehsize,
		Phentsize: phentsize,
		Phnum:     phnum,
	}
	copy(hdr.Ident[:], elf.ELFMAG)
	hdr.Ident[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	hdr.Ident[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	hdr.Ident[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	hdr.Ident[elf.EI_OSABI] = byte(elf.ELFOSABI_NONE)
	progs := [phnum]elf.Prog64{
		{ // the whole file, headers included, mapped read+execute
			Type: uint32(elf.PT_LOAD), Flags: uint32(elf.PF_R | elf.PF_X),
			Off: 0, Vaddr: pauseLoadAddr, Paddr: pauseLoadAddr,
			Filesz: size, Memsz: size, Align: 0x1000,
		},
		{ // a non-executable stack
			Type: uint32(elf.PT_GNU_STACK), Flags: uint32(elf.PF_R | elf.PF_W), Align: 16,
		},
	}
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, hdr)
	binary.Write(&b, binary.LittleEndian, progs)
	b.Write(code)
	if uint64(b.Len()) != size {
		return nil, fmt.Errorf("pause executable: built %d bytes, want %d", b.Len(), size)
	}
	return b.Bytes(), nil
}

// Pause returns Strata's pause image for the machine's architecture: one
// layer holding /pause, run as user 65535. It is built from code, the same
// bytes every time, so every node computes the same digest.
func Pause() (v1.Image, error) {
	exe, err := PauseExecutable(runtime.GOARCH)
	if err != nil {
		return nil, err
	}
	return FromFiles([]File{{Path: "/pause", Mode: 0o755, Content: exe}}, ConfigOptions{
		Entrypoint:   []string{"/pause"},
		User:         pauseUser,
		WorkingDir:   "/",
		Architecture: runtime.GOARCH,
	})
}
