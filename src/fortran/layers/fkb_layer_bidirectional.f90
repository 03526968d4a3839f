!! Bidirectional: two recurrent layers (simple_rnn, lstm or gru) over the same sequence, the
!! backward one with go_backwards flipped, merged as Keras' `Bidirectional` does: with
!! return_sequences=1 the backward output sequence is flipped back to input order first, then
!! concat (forward units first) | sum | mul | ave = (f + b) / 2.
!!
!! The file's tensors are the forward layer's, named forward_NAME, then the backward layer's,
!! named backward_NAME; the wrapper declares them (so the loader, get_tensor/set_tensor and the
!! writer see them in that order) and `prepare` hands copies to the two inner layers.
!!
!! Scratch per sample: the larger inner scratch, then both inner outputs. Recurrent state:
!! the forward layer's slice (its state_size*batch values), then the backward layer's.
module fkb_layer_bidirectional
  use iso_fortran_env, only: real32, real64, int64
  use fkb_errors, only: FKB_OK, FKB_ERR_FORMAT, FKB_ERR_UNSUPPORTED, set_error
  use fkb_layer, only: fkb_layer_t
  use fkb_config, only: fkb_config_t
  use fkb_layer_rnn, only: fkb_rnn_t
  implicit none
  private
  public :: fkb_bidirectional_t

  integer, parameter :: MERGE_CONCAT = 1, MERGE_SUM = 2, MERGE_MUL = 3, MERGE_AVE = 4
  character(len=*), parameter :: MERGE_NAMES(4) = [character(len=6) :: &
    'concat', 'sum', 'mul', 'ave']

  type, extends(fkb_layer_t) :: fkb_bidirectional_t
    integer :: merge = MERGE_CONCAT
    type(fkb_rnn_t) :: fwd, bwd
  contains
    procedure :: configure => bidi_configure
    procedure :: options => bidi_options
    procedure :: prepare => bidi_prepare
    procedure :: forward_r32 => bidi_forward_r32
    procedure :: forward_r64 => bidi_forward_r64
    procedure :: forward_ws_r32 => bidi_forward_ws_r32
    procedure :: splits_batch => bidi_splits_batch
    procedure :: forward_ws_r64 => bidi_forward_ws_r64
  end type fkb_bidirectional_t

contains

  logical function bidi_splits_batch(self)
    class(fkb_bidirectional_t), intent(in) :: self
    bidi_splits_batch = .true.
  end function bidi_splits_batch

  subroutine bidi_configure(self, cfg, stat, msg)
    class(fkb_bidirectional_t), intent(inout) :: self
    type(fkb_config_t), intent(inout) :: cfg
    integer, intent(out) :: stat
    character(len=:), allocatable, intent(inout) :: msg
    character(len=:), allocatable :: text
    integer :: k, nk, i

    call cfg%get_text('merge_mode', text, stat, msg)
    if (stat /= FKB_OK) return
    self%merge = 0
    do i = 1, size(MERGE_NAMES)
      if (text == trim(MERGE_NAMES(i))) self%merge = i
    end do
    if (self%merge == 0) then
      call set_error(stat, msg, FKB_ERR_FORMAT, cfg%where // ": merge_mode must be concat, " // &
                     "sum, mul or ave, got '" // text // "'")
      return
    end if
    call cfg%get_text('layer', text, stat, msg)
    if (stat /= FKB_OK) return
    if (text /= 'simple_rnn' .and. text /= 'lstm' .and. text /= 'gru') then
      call set_error(stat, msg, FKB_ERR_UNSUPPORTED, cfg%where // ": unknown inner layer '" // &
                     text // "' (simple_rnn, lstm or gru)")
      return
    end if

    ! Both directions read the same options; the backward one runs the other way.
    call setup(self%fwd, '/forward')
    call self%fwd%configure(cfg, stat, msg)
    if (stat /= FKB_OK) return
    call setup(self%bwd, '/backward')
    call self%bwd%configure(cfg, stat, msg)
    if (stat /= FKB_OK) return
    self%bwd%go_backwards = .not. self%bwd%go_backwards

    nk = size(self%fwd%params)
    if (allocated(self%params)) deallocate(self%params)
    allocate(self%params(2 * nk))
    do k = 1, nk
      self%params(k)%name = 'forward_' // self%fwd%params(k)%name
      self%params(k)%shape = self%fwd%params(k)%shape
      self%params(nk + k)%name = 'backward_' // self%bwd%params(k)%name
      self%params(nk + k)%shape = self%bwd%params(k)%shape
    end do

    if (self%fwd%return_sequences) then
      self%out_shape = [self%fwd%steps, merge(2, 1, self%merge == MERGE_CONCAT) * self%fwd%units]
    else
      self%out_shape = [merge(2, 1, self%merge == MERGE_CONCAT) * self%fwd%units]
    end if
    self%n_out = product(self%out_shape)
    self%scratch = max(self%fwd%scratch, self%bwd%scratch) + self%fwd%n_out + self%bwd%n_out
    self%state_size = self%fwd%state_size + self%bwd%state_size
  contains
    subroutine setup(l, suffix)
      type(fkb_rnn_t), intent(inout) :: l
      character(len=*), intent(in) :: suffix
      l%type_name = text
      l%name = self%name // suffix
      l%dtype = self%dtype
      l%in_shapes = self%in_shapes
      l%n_in = self%n_in
      l%reps = self%reps
      l%trainable = self%trainable
    end subroutine setup
  end subroutine bidi_configure

  subroutine bidi_options(self, cfg)
    class(fkb_bidirectional_t), intent(in) :: self
    type(fkb_config_t), intent(inout) :: cfg
    call cfg%set('merge_mode', trim(MERGE_NAMES(self%merge)))
    call cfg%set('layer', self%fwd%type_name)
    call self%fwd%options(cfg)
  end subroutine bidi_options

  subroutine bidi_prepare(self, stat, msg)
    !! Hands the tensors to the two directions.
    class(fkb_bidirectional_t), intent(inout) :: self
    integer, intent(out) :: stat
    character(len=:), allocatable, intent(inout) :: msg
    integer :: k, nk
    nk = size(self%fwd%params)
    do k = 1, nk
      call give(self%params(k), self%fwd%params(k))
      call give(self%params(nk + k), self%bwd%params(k))
    end do
    call self%fwd%prepare(stat, msg)
    if (stat == FKB_OK) call self%bwd%prepare(stat, msg)
  contains
    subroutine give(from, to)
      use fkb_tensor, only: fkb_tensor_t
      type(fkb_tensor_t), intent(in) :: from
      type(fkb_tensor_t), intent(inout) :: to
      if (allocated(from%r32)) to%r32 = from%r32
      if (allocated(from%r64)) to%r64 = from%r64
    end subroutine give
  end subroutine bidi_prepare

  ! ---- float32 ----

  subroutine bidi_forward_r32(self, x, y)
    class(fkb_bidirectional_t), intent(in) :: self
    real(real32), intent(in), contiguous :: x(:, :)
    real(real32), intent(inout), contiguous :: y(:, :)
    real(real32), allocatable :: ws(:)
    allocate(ws(self%scratch * size(x, 2, kind=int64)))
    call self%forward_ws_r32(x, y, ws)
  end subroutine bidi_forward_r32

  subroutine bidi_forward_ws_r32(self, x, y, ws, state)
    class(fkb_bidirectional_t), intent(in) :: self
    real(real32), intent(in), contiguous :: x(:, :)
    real(real32), intent(inout), contiguous :: y(:, :)
    real(real32), intent(inout), contiguous :: ws(:)
    real(real32), intent(inout), contiguous, optional :: state(:)
    integer(int64) :: n, a, b, sf
    n = size(x, 2, kind=int64)
    a = max(self%fwd%scratch, self%bwd%scratch) * n
    b = a + self%fwd%n_out * n
    sf = self%fwd%state_size * n
    call run(ws(a + 1:b), ws(b + 1:b + self%bwd%n_out * n))
  contains
    subroutine run(yf, yb)
      real(real32), intent(inout) :: yf(self%fwd%n_out, n), yb(self%bwd%n_out, n)
      if (present(state)) then
        call self%fwd%forward_ws(x, yf, ws(1:a), state(1:sf))
        call self%bwd%forward_ws(x, yb, ws(1:a), state(sf + 1:sf + self%bwd%state_size * n))
      else
        call self%fwd%forward_ws(x, yf, ws(1:a))
        call self%bwd%forward_ws(x, yb, ws(1:a))
      end if
      call merge_r32(self, n, yf, yb, y)
    end subroutine run
  end subroutine bidi_forward_ws_r32

  subroutine merge_r32(self, n, yf, yb, y)
    integer, parameter :: wp = real32
    class(fkb_bidirectional_t), intent(in) :: self
    integer(int64), intent(in) :: n
    real(wp), intent(in) :: yf(self%fwd%units, *), yb(self%fwd%units, *)
    real(wp), intent(inout) :: y(*)
    include 'kernels/bidirectional_merge.inc'
  end subroutine merge_r32

  ! ---- float64: the same bodies with wp = real64 ----

  subroutine bidi_forward_r64(self, x, y)
    class(fkb_bidirectional_t), intent(in) :: self
    real(real64), intent(in), contiguous :: x(:, :)
    real(real64), intent(inout), contiguous :: y(:, :)
    real(real64), allocatable :: ws(:)
    allocate(ws(self%scratch * size(x, 2, kind=int64)))
    call self%forward_ws_r64(x, y, ws)
  end subroutine bidi_forward_r64

  subroutine bidi_forward_ws_r64(self, x, y, ws, state)
    class(fkb_bidirectional_t), intent(in) :: self
    real(real64), intent(in), contiguous :: x(:, :)
    real(real64), intent(inout), contiguous :: y(:, :)
    real(real64), intent(inout), contiguous :: ws(:)
    real(real64), intent(inout), contiguous, optional :: state(:)
    integer(int64) :: n, a, b, sf
    n = size(x, 2, kind=int64)
    a = max(self%fwd%scratch, self%bwd%scratch) * n
    b = a + self%fwd%n_out * n
    sf = self%fwd%state_size * n
    call run(ws(a + 1:b), ws(b + 1:b + self%bwd%n_out * n))
  contains
    subroutine run(yf, yb)
      real(real64), intent(inout) :: yf(self%fwd%n_out, n), yb(self%bwd%n_out, n)
      if (present(state)) then
        call self%fwd%forward_ws(x, yf, ws(1:a), state(1:sf))
        call self%bwd%forward_ws(x, yb, ws(1:a), state(sf + 1:sf + self%bwd%state_size * n))
      else
        call self%fwd%forward_ws(x, yf, ws(1:a))
        call self%bwd%forward_ws(x, yb, ws(1:a))
      end if
      call merge_r64(self, n, yf, yb, y)
    end subroutine run
  end subroutine bidi_forward_ws_r64

  subroutine merge_r64(self, n, yf, yb, y)
    integer, parameter :: wp = real64
    class(fkb_bidirectional_t), intent(in) :: self
    integer(int64), intent(in) :: n
    real(wp), intent(in) :: yf(self%fwd%units, *), yb(self%fwd%units, *)
    real(wp), intent(inout) :: y(*)
    include 'kernels/bidirectional_merge.inc'
  end subroutine merge_r64

end module fkb_layer_bidirectional
