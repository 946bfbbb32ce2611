#include "textflag.h"

// func printable16(b []byte) int
//
// The index of the first byte of b outside 0x21–0x7e found in b's whole
// sixteen-byte blocks, or where the blocks end (len(b) rounded down to 16)
// when they hold none. SSE2, which every amd64 has: a byte is printable
// when, as a signed byte, it is above 0x20 and below 0x7f (0x80 and up are
// negative).
TEXT ·printable16(SB), NOSPLIT|NOFRAME, $0-32
	MOVQ	b_base+0(FP), SI
	MOVQ	b_len+8(FP), BX
	XORQ	AX, AX
	MOVQ	$0x2020202020202020, DX
	MOVQ	DX, X1
	PUNPCKLQDQ	X1, X1
	MOVQ	$0x7f7f7f7f7f7f7f7f, DX
	MOVQ	DX, X2
	PUNPCKLQDQ	X2, X2
loop:
	LEAQ	16(AX), CX
	CMPQ	CX, BX
	JA	end
	MOVOU	(SI)(AX*1), X0
	MOVOU	X0, X3
	PCMPGTB	X1, X3 // X3 = X0 > 0x20
	MOVOU	X2, X4
	PCMPGTB	X0, X4 // X4 = 0x7f > X0
	PAND	X4, X3
	PMOVMSKB	X3, DX
	XORL	$0xffff, DX
	JNZ	found
	MOVQ	CX, AX
	JMP	loop
found:
	BSFL	DX, DX
	ADDQ	DX, AX
end:
	MOVQ	AX, ret+24(FP)
	RET
